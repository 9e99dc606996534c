"""The customs service (`tradepulse worker customs`)."""
