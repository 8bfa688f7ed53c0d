"""Small projects that install only some of the apps; run by tests/test_projects.py."""
