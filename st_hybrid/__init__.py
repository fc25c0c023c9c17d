"""st-hybrid."""
