"""Twilio SMS and WhatsApp: the project's Rasa input channel, outbox and the local Twilio stand-in."""
