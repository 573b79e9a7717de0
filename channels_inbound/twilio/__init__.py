"""Twilio: inbound SMS/WhatsApp/Messenger, status callbacks and voice; outbound through its REST API."""
