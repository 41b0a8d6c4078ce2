"""Signed notifications: the change feed delivered to a school's webhook endpoints."""
