"""The syncer and upsyncer virtual workspaces (work in progress: only the URL rules exist so far)."""
