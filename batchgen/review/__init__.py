"""``batchgen review``: a local page for picking takes (server.py) and its HTML, CSS and JS (page.py)."""

from .server import Review, ReviewThread, add_review_arguments, review_command

__all__ = ["Review", "ReviewThread", "add_review_arguments", "review_command"]
