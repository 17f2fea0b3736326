"""pytest plugin placeholder (issue 4 fills it in)."""
