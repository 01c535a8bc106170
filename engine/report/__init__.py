"""What a run tells: events, masking, output logs, the display, JSON, JUnit and the state."""
