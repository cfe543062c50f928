"""Automated exports from Brevo to other systems (issue 16): what leaves, how it is packed, where it goes."""
