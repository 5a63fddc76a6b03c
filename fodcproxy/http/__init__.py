"""The HTTP side: a Quart-Trio app served by hypercorn inside the proxy's root nursery."""
