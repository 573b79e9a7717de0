"""CSV cells a spreadsheet opens as text, never as a formula (CSV injection).

Customers write names and subjects, and a cell starting with "=", "+", "-", "@", a tab or a carriage
return would be run by Excel or LibreOffice as a formula; such a cell gets a leading apostrophe.
Every CSV export of the project writes its cells through `spreadsheet_cell`.
"""

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_cell(value) -> object:
    """`value` as a CSV cell: None empty, numbers as they are, text guarded against formulas."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
