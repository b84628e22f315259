import requests

print(requests.get)
