"""The local batch backend (``batch = local``): pilots as processes on the factory host."""
