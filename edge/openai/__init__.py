"""The OpenAI HTTP schema: pydantic request models, response models and error kinds."""
