"""Settings readers fail loudly on a bad value instead of running with a different one."""

import logging

import pytest
from django.core.exceptions import ImproperlyConfigured

from contactcenter.env import database_settings_from_url, read_bool, read_int, read_list, read_str, read_url


@pytest.mark.parametrize("raw, expected", [("1", True), ("true", True), ("Yes", True), ("off", False), ("0", False)])
def test_read_bool_accepts_the_usual_spellings(monkeypatch, raw, expected):
    monkeypatch.setenv("SB_FLAG", raw)
    assert read_bool("SB_FLAG", default=not expected) is expected


def test_read_bool_rejects_anything_else(monkeypatch):
    monkeypatch.setenv("SB_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="SB_FLAG='maybe' is not a boolean"):
        read_bool("SB_FLAG", default=False)


def test_read_int_rejects_words_and_values_below_the_minimum(monkeypatch):
    monkeypatch.setenv("SB_NUMBER", "ten")
    with pytest.raises(ImproperlyConfigured, match="not a whole number"):
        read_int("SB_NUMBER", default=1)
    monkeypatch.setenv("SB_NUMBER", "-1")
    with pytest.raises(ImproperlyConfigured, match="below its minimum"):
        read_int("SB_NUMBER", default=1, minimum=0)


def test_missing_required_value_names_the_variable(monkeypatch):
    monkeypatch.delenv("SB_REQUIRED", raising=False)
    with pytest.raises(ImproperlyConfigured, match="SB_REQUIRED is not set"):
        read_str("SB_REQUIRED")


def test_read_list_splits_and_trims(monkeypatch):
    monkeypatch.setenv("SB_HOSTS", " a.example , b.example,,")
    assert read_list("SB_HOSTS", default=[]) == ["a.example", "b.example"]


def test_read_url_checks_the_scheme(monkeypatch):
    monkeypatch.setenv("SB_URL", "mysql://x/y")
    with pytest.raises(ImproperlyConfigured, match="must be a URL starting with"):
        read_url("SB_URL", schemes=("postgres",))


def test_database_url_with_tcp_host_and_options():
    config = database_settings_from_url("postgres://app:p%40ss@db.internal:6432/switchboard?sslmode=require")
    assert config["NAME"] == "switchboard"
    assert (config["USER"], config["PASSWORD"]) == ("app", "p@ss")
    assert (config["HOST"], config["PORT"]) == ("db.internal", "6432")
    assert config["OPTIONS"] == {"sslmode": "require"}


def test_database_url_with_a_unix_socket_directory():
    config = database_settings_from_url("postgresql://postgres@/switchboard?host=/srv/sb/.switchboard/postgres")
    assert config["HOST"] == "/srv/sb/.switchboard/postgres"
    assert config["PORT"] == ""
    assert config["OPTIONS"] == {}


def test_database_url_without_a_database_name_is_refused():
    with pytest.raises(ImproperlyConfigured, match="names no database"):
        database_settings_from_url("postgres://localhost:5432/")


def test_the_run_output_leaves_out_the_info_lines_of_periodic_sweeps_only():
    from contactcenter.celery import PeriodicJobsQuiet

    def record(level, message, args):
        return logging.LogRecord("celery", level, __file__, 1, message, args, None)

    quiet = PeriodicJobsQuiet()
    sweep = "tasks.jobs.sweep_due_timers"
    assert not quiet.filter(record(logging.INFO, "Task %(name)s[%(id)s] succeeded", {"name": sweep, "id": "1"}))
    assert not quiet.filter(record(logging.INFO, "Scheduler: Sending due task %s (%s)", ("sweep-due-timers", sweep)))
    assert quiet.filter(record(logging.ERROR, "Task %(name)s[%(id)s] raised", {"name": sweep, "id": "1"}))
    delivery = "conversations.jobs.deliver_outbound_message"
    assert quiet.filter(record(logging.INFO, "Task %(name)s[%(id)s] succeeded", {"name": delivery, "id": "2"}))
    assert quiet.filter(record(logging.INFO, "celery@host ready.", None))
