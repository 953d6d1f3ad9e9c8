"""
The errno values of go-sdk/errno (the spec sheet, section 4) that the host
functions answer (0 = ok).
"""

NONE = 0
EVENT_NOT_FOUND = 1
BUFFER_TOO_SMALL = 2
ADDRESS_OUT_OF_MEMORY = 3
NIL_ADDRESS = 4
HTTP_WRITE = 5
HTTP_READ_BODY = 6
END_OF_BODY = 8
MEMORY_WRITE_FAILED = 12
