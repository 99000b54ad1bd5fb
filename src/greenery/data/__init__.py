"""Source data: the raw tables' schema, the course's weekly facts, the generator and the CSV reader.

Everything here yields ``(table, frame)`` pairs or validated frames; nothing writes a
warehouse or imports anything above this room.
"""
