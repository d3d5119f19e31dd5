"""Events: clusters of posts about one matter, with their running aggregates (see ``service``)."""
