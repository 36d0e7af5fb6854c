"""Operations: what integration admins use — metrics and admin HTTP routes, the dashboard,
mapping table reloads, journal retention, backup and restore."""
