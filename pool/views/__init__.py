"""Public pages: the students' solve page."""
