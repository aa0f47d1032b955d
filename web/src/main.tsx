import { render } from 'preact';
import { Http } from './api/http';
import { App } from './ui/App';
import './styles.css';

const http = new Http();
render(<App http={http} />, document.getElementById('app')!);
