"""Conversation logic shared by the action server: what the texter's answers change in the dialogue."""
