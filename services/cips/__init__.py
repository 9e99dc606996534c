"""The cips service (`tradepulse worker cips`)."""
