"""Test and benchmark doubles: small fake OpenAI servers (never imported by the app)."""
