"""HTTP routes: each validates its input, calls the Service, and formats the answer."""
