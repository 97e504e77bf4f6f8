#!/usr/bin/env python3
"""The hello_world app written with the official `dendro.sdk` (App / ProcessorBase), as its
authors write apps; the tests run it unmodified against our service."""
from dendro.sdk import App, ProcessorBase, InputFile, OutputFile, upload_additional_job_output
from pydantic import BaseModel, Field

app = App('hello_sdk', description='Hello world written with the official Dendro SDK')


class HelloWorld1Context(BaseModel):
    name: str = Field(description='The name to say hello to', default='world')


class HelloWorld1(ProcessorBase):
    name = 'hello_world_1'
    description = 'Prints a greeting'
    label = 'hello_world_1'
    image = ''
    executable = '/app/main.py'
    attributes = {}

    @staticmethod
    def run(context: HelloWorld1Context):
        print(f'Hello, {context.name}!')


class HelloWorld2Context(BaseModel):
    output: OutputFile = Field(description='Output text file')
    name: str = Field(description='The name to say hello to', default='world')


class HelloWorld2(ProcessorBase):
    name = 'hello_world_2'
    description = 'Writes a greeting'
    label = 'hello_world_2'
    image = ''
    executable = '/app/main.py'
    attributes = {}

    @staticmethod
    def run(context: HelloWorld2Context):
        with open('output.txt', 'w') as f:
            f.write(f'Hello, {context.name}!')
        context.output.upload('output.txt')


class CountContext(BaseModel):
    input: InputFile = Field(description='Input text file')
    output: OutputFile = Field(description='Output JSON')
    include_whitespace: bool = Field(description='Count whitespace', default=True)


class CountCharacters(ProcessorBase):
    name = 'count_characters'
    description = 'Counts characters'
    label = 'count_characters'
    image = ''
    executable = '/app/main.py'
    attributes = {}

    @staticmethod
    def run(context: CountContext):
        import json
        context.input.download('input.txt')
        text = open('input.txt').read()
        if not context.include_whitespace:
            text = ''.join(c for c in text if not c.isspace())
        with open('output.json', 'w') as f:
            json.dump({'num_characters': len(text)}, f)
        context.output.upload('output.json')


class HelloReportContext(BaseModel):
    report: OutputFile = Field(description='Output text file')
    name: str = Field(description='The name to say hello to', default='world')


class HelloReport(ProcessorBase):
    name = 'hello_report'
    description = 'Writes a greeting, and a copy of it as an additional output in a folder'
    label = 'hello_report'
    image = ''
    executable = '/app/main.py'
    attributes = {}

    @staticmethod
    def run(context: HelloReportContext):
        for fname in ('report.txt', 'greeting.txt'):
            with open(fname, 'w') as f:
                f.write(f'Hello, {context.name}!')
        context.report.upload('report.txt')  # the SDK deletes the local file after the upload
        upload_additional_job_output('greeting.txt', 'figures/greeting.txt')


app.add_processor(HelloWorld1)
app.add_processor(HelloWorld2)
app.add_processor(CountCharacters)
app.add_processor(HelloReport)

if __name__ == '__main__':
    app.run()
