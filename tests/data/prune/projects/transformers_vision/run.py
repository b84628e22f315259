from transformers import pipeline

print(pipeline)
