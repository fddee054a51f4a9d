"""Triage of single messages: what ``hotline triage`` prints and what the live bot computes."""
