"""Performance before labels arrive (CBPE, DLE), called by the concept stage."""
