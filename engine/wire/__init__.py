"""Wire format: the record schema and the frame codec."""
