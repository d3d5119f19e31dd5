"""Analysis stage: normalisation, segmentation, sentiment, topics, entities, privacy, events, bursts."""
