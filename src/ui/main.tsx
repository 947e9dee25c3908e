/** The console's entry: its styles (xterm's and ours) and the app mounted on #app. */
import '@xterm/xterm/css/xterm.css'
import './app.css'
import { render } from 'preact'
import { App } from './app.js'

render(<App />, document.getElementById('app')!)
