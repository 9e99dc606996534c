"""The cbec service (`tradepulse worker cbec`)."""
