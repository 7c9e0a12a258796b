"""``scanner serve``: the pre-forking master and its asyncio worker processes."""
