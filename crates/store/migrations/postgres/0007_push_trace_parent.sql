-- The W3C traceparent of the push's accept span, when traces are exported: its fan-out
-- and deliveries continue that trace on any node.
ALTER TABLE pushes ADD COLUMN trace_parent TEXT;
