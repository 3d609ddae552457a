"""Pure domain code: no I/O, no ORM."""
