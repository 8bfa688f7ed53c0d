"""demo_data and demo_tour."""
