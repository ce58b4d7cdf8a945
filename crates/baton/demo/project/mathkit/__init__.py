"""mathkit: a tiny arithmetic library used by the Baton demo."""
