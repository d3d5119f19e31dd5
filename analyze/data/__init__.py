"""Data files shipped with analyze: taxonomy, gazetteer, stopwords, topic model."""
