import cv2
import git
import pynvml
import sklearn
import yaml

print(cv2, git, pynvml, sklearn, yaml)
