"""What runs on the production instance. Each module is a standalone program (Python 3.9, stdlib +
boto3 only, no project imports): the SSM document embeds it verbatim. The operator CLI imports the
same modules, so the code that runs at night is the code the tests exercise."""
