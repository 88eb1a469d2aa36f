"""codellm: a Dagster-native private code LLM platform."""
