"""Runs ``rasa`` with the ``twilio`` library's API base pointed at ``TWILIO_API_URL``.

Only for the load benchmark: Rasa's built-in ``twilio`` channel creates its own Twilio client with
no way to change the base URL, so this launcher sets it before Rasa starts. The project's channel
does not need it (it reads ``TWILIO_API_URL`` itself).
Usage: python bench/rasa_patched_twilio.py run --model ... (any ``rasa`` arguments).
"""
from __future__ import annotations

import os
import sys

from twilio.rest.api import Api

_original_init = Api.__init__


def _init(self, twilio) -> None:
    _original_init(self, twilio)
    self.base_url = os.environ["TWILIO_API_URL"]


Api.__init__ = _init

if __name__ == "__main__":
    from rasa.__main__ import main

    sys.argv = ["rasa", *sys.argv[1:]]
    main()
