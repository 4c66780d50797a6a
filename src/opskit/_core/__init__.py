"""Private plumbing shared by every opskit module. Imports no primitive."""
