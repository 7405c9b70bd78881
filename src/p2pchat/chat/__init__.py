"""The ratified group chat (``/p2pchat/1.0.0``); see specs/chat.md."""
