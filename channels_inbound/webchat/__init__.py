"""Webchat: the widget customers' websites embed, talking to us over a websocket (and HTTP for files).

A widget is a ChannelEndpoint (provider and channel `webchat`) whose address is the public widget
key and whose `allowed_origins` lists the websites that may embed it. Visitors are anonymous: the
server gives each one a signed visitor token, kept in the browser's localStorage, and the visitor id
inside it is the contact's `webchat` identity.
"""
