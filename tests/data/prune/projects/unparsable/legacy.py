import yaml
print "python 2"
