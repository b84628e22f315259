import httpx
from sqlalchemy import create_engine

engine = create_engine("postgresql://db/app")
client = httpx.Client(http2=True)
