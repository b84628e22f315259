from google.cloud import storage


def bucket(name: str) -> object:
    return storage, name
