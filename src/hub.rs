//! Fetching a model from the HuggingFace hub (to be written).
