"""Acknowledgement: a silence bound to the alerts firing when it was made, ended when they resolve."""
