"""The taxrefund service (`tradepulse worker taxrefund`)."""
