-- Fencing between replicas. `alive_since_ms`: the start of a replica's unbroken run of
-- heartbeats (database clock), so one that was cut off with the others takes over nobody until
-- they all had a chance to say they are alive again. `fence`: bumped each time another replica
-- takes a stream over; a socket finishes its stream only at the token it started with.
ALTER TABLE replicas ADD COLUMN alive_since_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE streams ADD COLUMN fence INTEGER NOT NULL DEFAULT 0;
