"""Backups and disaster recovery: files and PostgreSQL (logical dumps, base backups with the WAL
archive for point-in-time recovery), encrypted and verified, with retention, schedules and
restore drills. See docs/backup.md."""
