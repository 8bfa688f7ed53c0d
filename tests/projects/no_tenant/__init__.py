"""Test project with every app but better_tenant."""
