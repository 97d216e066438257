"""tether's benchmark, side by side with a Ray actor and a bare FastAPI endpoint (`make bench`)."""
